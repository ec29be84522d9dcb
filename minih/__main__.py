"""`python -m minih COMMAND ...`: apply the environment policy (minih/app/policy.py), then run."""
import os
import sys

from .app.policy import apply_policy


def entry() -> None:
    """Apply the thread and memory policy (restarting once if needed), then run the command line.
    Both `python -m minih` and the `minih` console script come here."""
    if apply_policy():
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "minih", *sys.argv[1:]])
    from .cli import main
    sys.exit(main())


if __name__ == "__main__":
    entry()
