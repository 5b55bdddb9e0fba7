"""The tqdm progress bar the CLI hands to long-running library calls (library code never prints)."""

from __future__ import annotations

from ..io.gguf_writer import Progress


class TqdmProgress(Progress):
    def __init__(self, desc: str = "writing"):
        self.desc = desc
        self.bar = None
        self.n_tensors = 0
        self.done = 0

    def start(self, total_bytes: int, n_tensors: int) -> None:
        from tqdm import tqdm

        self.n_tensors = n_tensors
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=self.desc,
                        dynamic_ncols=True, leave=True)
        self.bar.set_postfix_str(f"0/{n_tensors} tensors")

    def advance(self, nbytes: int) -> None:
        if self.bar is not None:
            self.bar.update(nbytes)

    def tensor_done(self, name: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done}/{self.n_tensors} tensors", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ChunkBar:
    """A tqdm bar over evaluation chunks, called as ``progress(done, total, figures)``."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int, figures) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="chunk", desc=self.desc, dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in figures.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LayerBar:
    """A tqdm bar over the layers of a layer-major run (bytes read so far, ETA), called as
    ``progress(done, layers, figures)``."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int, figures) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="layer", desc=self.desc, dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(f"read {figures.get('bytes_read', 0) / 1e9:.2f} GB", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
