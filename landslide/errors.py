"""Exception types. Every message names the file, URI or field at fault and, where possible, the fix."""


class LandslideError(Exception):
    """Base class for errors a user can act on; the CLI prints them as one line (exit code 2)."""


class ConfigError(LandslideError):
    """A configuration value is missing, malformed or impossible."""


class StorageError(LandslideError):
    """A URI cannot be read or written (missing, unreachable, permission denied)."""


class ImageError(LandslideError):
    """An image cannot be decoded safely (corrupt, truncated, too many pixels, unsupported)."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class NoDataError(ImageError):
    """A tile or window holds no data at all (every pixel is nodata): not an error of the file."""


class DataError(LandslideError):
    """A data set or manifest is unusable (missing columns, empty classes, no images)."""


class WeightsUnavailableError(LandslideError):
    """A pretrained-weight source cannot be used here."""


class CheckpointError(LandslideError):
    """A model checkpoint is missing, incomplete or does not match its model card."""
