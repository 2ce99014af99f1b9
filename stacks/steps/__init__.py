"""The pipeline's steps on the infrastructure side: one ``<handler module>_spec.py`` per runtime module
of ``lambda_handlers/`` (its functions' handlers, variables, limits and IAM statements), and the
state machine construct that chains them (``state_machine.py``).
"""
