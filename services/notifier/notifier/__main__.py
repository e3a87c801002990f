from notifier.app import spec
from notifier.settings import Settings
from shared.service import run

run(spec(), Settings())
