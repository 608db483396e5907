"""SeqIO registrations for lmsi. Imported for side effects."""

from tasks import anli  # noqa: F401
from tasks import arc  # noqa: F401
from tasks import arithmetic  # noqa: F401
from tasks import gsm8k  # noqa: F401
from tasks import mixtures  # noqa: F401
from tasks import openbookqa  # noqa: F401
from tasks import selfgen  # noqa: F401
