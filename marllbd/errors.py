"""The base of marllbd's own errors.

Every error class of ours (TraceError, ScenarioError, PolicyError, ...) derives from
`MarllbdError`, besides the builtin it is (most are ValueErrors).  Its message says
what was wrong: the file and line, the key path, the flag, and what would be right.
`marllbd` reports any of them on one line and exits 2, whichever command found it;
code that embeds marllbd can catch this one class.  Nothing else belongs here: this
module imports nothing, so any module can import it.
"""


class MarllbdError(Exception):
    """An error of ours whose message names what was wrong (see the module docstring)."""
