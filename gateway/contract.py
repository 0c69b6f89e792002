"""The compiled contract: the generated file descriptors of every public service.

The gRPC server registers and reflects these; the gateway builds its routes from them.
"""

from __future__ import annotations

from c2c.v1 import contact_assets_pb2
from crm.v1 import crm_pb2
from files.v1 import files_pb2

FILE_DESCRIPTORS = (contact_assets_pb2.DESCRIPTOR, files_pb2.DESCRIPTOR, crm_pb2.DESCRIPTOR)
