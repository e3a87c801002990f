from identity.app import spec
from identity.settings import Settings
from shared.service import run

run(spec(), Settings())
