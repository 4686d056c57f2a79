"""The rules. Every module here registers its rules on import (see ``registry``)."""
