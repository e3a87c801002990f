"""Photo processing throughput next to the raw pyvips ceiling, measured side by side in one run.

A generated 12 MP JPEG (noise, so it decodes like a photo; EXIF with GPS; orientation 6) becomes 2048, 1080
and 320 px JPEG q80. Medians of 5 rounds, the contenders interleaved so the machine's drift hits all alike.

    cd /work/main && PYTHONPATH=.:services/media .venv/bin/python bench/imaging.py
"""

import asyncio
import resource
import statistics
import tempfile
import time
from collections.abc import Callable

import pyvips

from media.imaging import PhotoProcessor, process_photo
from shared.testing.images import jpeg_with_gps

SIZES = (2048, 1080, 320)
MAX_PIXELS = 50_000_000
ROUNDS = 5
PER_ROUND = 6
POOL_IMAGES = 24


def ours(path: str) -> None:
    process_photo(path, SIZES, MAX_PIXELS, quality=80)


def raw(path: str) -> None:
    # The ceiling: no checks, no colour or metadata handling. copy_memory is needed by any reuse of the
    # largest variant: a sequential JPEG decode cannot be read twice ("out of order read").
    largest = pyvips.Image.thumbnail(path, 2048).copy_memory()
    largest.jpegsave_buffer(Q=80)
    for size in SIZES[1:]:
        largest.thumbnail_image(size).jpegsave_buffer(Q=80)


def raw_two_threads(path: str) -> None:
    pyvips.concurrency_set(2)
    try:
        raw(path)
    finally:
        pyvips.concurrency_set(1)


def rate(work: Callable[[str], None], path: str) -> float:
    started = time.perf_counter()
    for _ in range(PER_ROUND):
        work(path)
    return PER_ROUND / (time.perf_counter() - started)


async def pool_rate(path: str, workers: int) -> float:
    processor = PhotoProcessor(workers)
    try:
        await asyncio.gather(*(processor.process(path, SIZES, MAX_PIXELS) for _ in range(workers)))  # start
        started = time.perf_counter()
        await asyncio.gather(*(processor.process(path, SIZES, MAX_PIXELS) for _ in range(POOL_IMAGES)))
        return POOL_IMAGES / (time.perf_counter() - started)
    finally:
        await processor.close()


def main() -> None:
    with tempfile.NamedTemporaryFile(suffix=".jpg") as file:
        file.write(jpeg_with_gps(4000, 3000, orientation=6, textured=True))
        file.flush()
        contenders = {"process_photo": ours, "raw pyvips": raw, "raw pyvips, 2 threads": raw_two_threads}
        for work in contenders.values():
            work(file.name)  # warm up; the first process_photo also configures libvips (1 thread, no cache)
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(ROUNDS):
            for name, work in contenders.items():
                rates[name].append(rate(work, file.name))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        for name, value in medians.items():
            print(f"{name:<24} {value:5.2f} images/s  (rounds: {', '.join(f'{v:.2f}' for v in rates[name])})")
        print(f"{'ratio':<24} {medians['process_photo'] / medians['raw pyvips']:5.2f} of the raw ceiling")
        for workers in (1, 2):
            pooled = asyncio.run(pool_rate(file.name, workers))
            print(f"{f'PhotoProcessor({workers})':<24} {pooled:5.2f} images/s")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{'worker peak RSS':<24} {peak:5.0f} MB")


if __name__ == "__main__":
    main()
