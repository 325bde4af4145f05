"""Errors that stop a stage with a message for the user instead of a traceback."""


class CreditRiskError(Exception):
    """Base class: the message says what is wrong and where."""


class ConfigError(CreditRiskError):
    """params.yaml, the data contract or a CLI argument is missing, malformed or invalid."""


class DataError(CreditRiskError):
    """Input data cannot be read or breaks the data contract."""
