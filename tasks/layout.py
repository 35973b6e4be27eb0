"""Where things live under a store: ``runs/<run-id>/…`` and ``models/<name>/<version>/``."""

from __future__ import annotations

from dataclasses import dataclass

from s2s_core.storage import join


@dataclass(frozen=True)
class RunLayout:
    store: str
    run_id: str

    @property
    def root(self) -> str:
        return join(self.store, "runs", self.run_id)

    def split(self, name: str) -> str:
        return join(self.root, "data", f"{name}.parquet")

    @property
    def prepare_report(self) -> str:
        return join(self.root, "data", "prepare_report.json")

    @property
    def tokenizer(self) -> str:
        return join(self.root, "tokenizer")

    @property
    def checkpoints(self) -> str:
        return join(self.root, "checkpoints")

    @property
    def reports(self) -> str:
        return join(self.root, "reports")

    @property
    def logs(self) -> str:
        return join(self.root, "logs")

    @property
    def warm_start(self) -> str:
        """The package a warm-started run began from, fixed at its first start (``train.init_from``)."""
        return join(self.root, "warm_start.json")

    @property
    def config(self) -> str:
        return join(self.root, "config.yaml")


def model_url(store: str, name: str, version: str) -> str:
    return join(store, "models", name, version)
