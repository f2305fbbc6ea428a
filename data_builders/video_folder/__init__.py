"""`video_folder`: any folder of face videos or frame folders as frame pairs (MA2MI), as TFDS."""

from data_builders.video_folder.video_folder_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    VideoFolderConfig,
    read_video_folder,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "VideoFolderConfig", "read_video_folder"]
