from media.app import spec
from media.settings import Settings
from shared.service import run

run(spec(), Settings())
