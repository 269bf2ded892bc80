"""`ProbeWarning`: the one warning class of the probe and its reports."""


class ProbeWarning(UserWarning):
    """Something the probe changed or could not do exactly; the message says what."""
