"""The exit codes of ``panopipe``; ``panopipe --help`` lists them (:data:`HELP`).

Importing this module imports nothing else, so the CLI's ``--help`` stays quick.
"""

from __future__ import annotations

#: The command did what it was asked (a watched run SUCCEEDED).
SUCCESS = 0
#: The run ended FAILED, TIMED_OUT or ABORTED.
RUN_FAILED = 1
#: Usage or input error: nothing was started.
USAGE = 2
#: AWS (or the local AWS) is not ready or refused: no region or credentials, not deployed, unreachable.
#: An input of the command's environment: the same code as any usage or input error (the three codes
#: users script against are 0, 1 and 2).
AWS = USAGE
#: Interrupted (Ctrl-C); a run that was being watched goes on.
INTERRUPTED = 130

#: The epilog of ``panopipe --help`` (one line per code).
HELP = "\n".join(
    [
        "Exit codes:",
        f"{SUCCESS}    success (a watched run SUCCEEDED)",
        f"{RUN_FAILED}    the run ended FAILED, TIMED_OUT or ABORTED; a package registration FAILED;"
        " verify-stage found the stage not ready, or its smoke run did not succeed",
        f"{USAGE}    usage or input error: bad option or option combination, missing or invalid config file,"
        " malformed or unknown execution ARN, invalid data set name or folder; AWS not ready or refusing"
        " (no region or credentials, pipeline not deployed, AWS or the local AWS unreachable, access denied,"
        " the CDK CLI failing)",
        f"{INTERRUPTED}  interrupted (Ctrl-C): a run goes on (panopipe watch)",
    ]
)
