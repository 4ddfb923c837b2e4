"""The one exception type that reaches the user as a one-line message instead of a traceback."""


class EvorlError(Exception):
    """A problem the user can fix (bad config, missing checkpoint, unsupported env).

    The message is shown as a single line, so it should name the offending key or path and the fix.
    """


class EnvFault(EvorlError):
    """An env misbehaved while it ran: raised in reset/step, or returned NaN/inf observations or
    rewards. The message names the env id, the call and how many env steps it had played."""
