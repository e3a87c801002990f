from posts.app import spec
from posts.settings import Settings
from shared.service import run

run(spec(), Settings())
