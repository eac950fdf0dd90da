"""The sandbox: fake Moodle and Zoho CRM servers over a seeded, generated college.

See ``README.md`` in this package for the contract (Zoho modules and fields, truth format,
mutate parameters, events). Production code never imports this package.
"""

from .college import College, generate_college
from .config import SandboxConfig
from .server import Sandbox, SandboxApp, run_sandbox, serve

__all__ = ["College", "generate_college", "SandboxConfig", "Sandbox", "SandboxApp", "run_sandbox", "serve"]
