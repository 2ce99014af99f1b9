"""The pipeline's steps on the infrastructure side, and the state machine that chains them.

One ``<handler module>_spec.py`` per runtime module of ``lambda_handlers/`` (its functions'
handlers, variables, limits and IAM statements); ``state_machine.py`` chains them.
"""
