"""SeqIO registrations for lmsi. Imported for side effects."""

from tasks import arithmetic  # noqa: F401
from tasks import selfgen  # noqa: F401
