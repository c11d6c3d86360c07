"""Raw JSON documents of a sandbox server, either generation, turned into typed values.

Pure: no I/O, no clock. One module per document, each a frozen pydantic model
(see ``base``); both generations in the same units: bytes, hertz, seconds, and
``None`` for "unlimited". What the rest of the package uses is importable from here.
"""

from .base import InvalidDocument as InvalidDocument
from .execute import parse_execute_response as parse_execute_response
from .libraries import Libraries as Libraries
from .libraries import parse_libraries as parse_libraries
from .specifications import Specifications as Specifications
from .specifications import detect_api as detect_api
from .specifications import parse_specifications as parse_specifications
from .usage import Usage as Usage
from .usage import parse_usage as parse_usage
