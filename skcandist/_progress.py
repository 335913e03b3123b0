"""A progress bar over the student's epochs, as a skorch callback."""

import sys

from skorch.callbacks import Callback

__all__ = ["EpochProgress"]


class EpochProgress(Callback):
    """Show the student's epochs as a progress bar (tqdm) with the last loss.

    Parameters
    ----------
    file : file-like, default=None
        Where the bar is drawn; None is standard error.

    Examples
    --------
    >>> from skcandist import CanDistClassifier
    >>> clf = CanDistClassifier(max_epochs=2, callbacks=[EpochProgress()])
    """

    def __init__(self, file=None):
        self.file = file

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(
            total=net.max_epochs,
            desc="student",
            unit="epoch",
            file=self.file if self.file is not None else sys.stderr,
        )

    def on_epoch_end(self, net, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is None:
            return
        loss = net.history[-1].get("train_loss")
        if loss is not None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(1)

    def on_train_end(self, net, **kwargs):
        bar = self.__dict__.pop("bar_", None)
        if bar is not None:
            bar.close()

    def __getstate__(self):
        # A saved model keeps the callback, never an open bar.
        return {k: v for k, v in self.__dict__.items() if k != "bar_"}
