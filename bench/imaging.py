"""Photo processing throughput and worker memory for a 12 MP JPEG and a 12 MP HEIC, next to the raw ceiling
of the same decoders, measured side by side in one run.

Each photo (noise, so it decodes like a photo; EXIF with GPS; orientation 6) becomes 2048, 1080 and 320 px
JPEG q80, once plain and once with a school's "do not share" watermark (`process_photo(..., watermark=...)`: libvips
text rendering drawn on each variant). The raw ceiling for JPEG is plain pyvips; for HEIC, whose HEVC the libheif in pyvips-binary cannot
decode, it is pillow-heif's decode handed to pyvips as memory, without checks. The upload check
(`inspect_upload`: structure, header, full decode) is timed as well. Medians of 5 rounds, the contenders
interleaved so the machine's drift hits all alike. Peak RSS is each worker process's own (a fresh spawned
process per format, as the service's workers are spawned, after three checks and processings, watermarked).

    cd /work/main && PYTHONPATH=.:services/media .venv/bin/python bench/imaging.py
"""

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import pillow_heif
import pyvips

from media.imaging import PhotoProcessor, inspect_upload, process_photo
from shared.testing.images import heic_with_gps, jpeg_with_gps

SIZES = (2048, 1080, 320)
MAX_PIXELS = 50_000_000
ROUNDS = 5
PER_ROUND = 4
POOL_IMAGES = 16
WATERMARK = "Niet delen \u2013 OBS De Lichtstraat"


def ours(path: str) -> None:
    process_photo(path, SIZES, MAX_PIXELS, quality=80)


def marked(path: str) -> None:
    process_photo(path, SIZES, MAX_PIXELS, quality=80, watermark=WATERMARK)


def door(path: str) -> None:
    # On a copy: the check cuts the file at the image's end, which must not change the input between runs.
    with open(path, "rb") as source, tempfile.NamedTemporaryFile() as copy:
        copy.write(source.read())
        copy.flush()
        inspect_upload(copy.name, MAX_PIXELS)


def _variants(largest: pyvips.Image) -> None:
    largest.jpegsave_buffer(Q=80)
    for size in SIZES[1:]:
        largest.thumbnail_image(size).jpegsave_buffer(Q=80)


def raw_jpeg(path: str) -> None:
    # No checks, no colour or metadata handling. copy_memory is needed by any reuse of the largest variant:
    # a sequential JPEG decode cannot be read twice ("out of order read").
    _variants(pyvips.Image.thumbnail(path, 2048).copy_memory())


def raw_heic(path: str) -> None:
    heif = pillow_heif.open_heif(path)
    width, height = heif.size
    pixels = pyvips.Image.new_from_memory(heif.data, width, height, 3, "uchar")
    _variants(pixels.thumbnail_image(2048).copy_memory())


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


def worker_peak_mb(path: str) -> float:
    """In a worker: the upload check and processing of one photo, a few times; the process's peak RSS.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a spawned worker would report
    the parent's peak (here the hundreds of MB Pillow takes to generate the test photos)."""
    for _ in range(3):
        door(path)
        ours(path)
        marked(path)
    with open("/proc/self/status") as status:
        (line,) = (line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def peak_in_fresh_worker(path: str) -> float:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        return worker.submit(worker_peak_mb, path).result()


def bench(kind: str, data: bytes, raw: Callable[[str], None]) -> None:
    with tempfile.NamedTemporaryFile(suffix=f".{kind.lower()}") as file:
        file.write(data)
        file.flush()
        contenders = {"process_photo": ours, "raw": raw, "with watermark": marked, "inspect_upload": door}
        for work in contenders.values():
            work(file.name)  # warm up; the first call also configures libvips (1 thread, no cache)
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(ROUNDS):
            for name, work in contenders.items():
                rates[name].append(rate(work, file.name))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        print(f"== {kind}, {len(data) / 1e6:.1f} MB")
        for name, value in medians.items():
            print(f"{name:<24} {value:5.2f} images/s  (rounds: {', '.join(f'{v:.2f}' for v in rates[name])})")
        for name, label in (("process_photo", "ratio"), ("with watermark", "ratio, watermarked")):
            # Each round's own ratio (its contenders ran back to back), then their median: a busy moment of
            # the machine then weighs on both sides of a ratio rather than on one contender's median.
            ratios = [ours / raw for ours, raw in zip(rates[name], rates["raw"], strict=True)]
            print(
                f"{label:<24} {statistics.median(ratios):5.2f} of the raw ceiling "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; of the medians: "
                f"{medians[name] / medians['raw']:.2f})"
            )
        for workers in (1, 2):
            pooled = asyncio.run(pool_rate(file.name, workers))
            print(f"{f'PhotoProcessor({workers})':<24} {pooled:5.2f} images/s")
        print(f"{'worker peak RSS':<24} {peak_in_fresh_worker(file.name):5.0f} MB")


def main() -> None:
    bench("JPEG", jpeg_with_gps(4000, 3000, orientation=6, textured=True), raw_jpeg)
    bench("HEIC", heic_with_gps(4000, 3000, orientation=6, textured=True), raw_heic)


if __name__ == "__main__":
    main()
