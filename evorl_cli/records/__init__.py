"""Records of a run: the per-generation record, its loggers (csv, table, TensorBoard, W&B), the
end-of-run summary, plots and `read_run`."""

from evorl_cli.records.logger import Logger, LoggerContext, Loggers
from evorl_cli.records.plots import plot, plot_on_finish
from evorl_cli.records.read import read_run
from evorl_cli.records.record import GenerationRecord
from evorl_cli.records.table import generation_table, summary_panel

__all__ = ["GenerationRecord", "Logger", "LoggerContext", "Loggers", "generation_table", "plot", "plot_on_finish",
           "read_run", "summary_panel"]
