from .atomic_files import atomic_copy_file, atomic_output, atomic_write_text
from .input_files import (IMAGE_EXTENSIONS, ConfigFileError, ImageFileError, image_stems,
                          list_images, load_config, read_image)

__all__ = [
    'atomic_copy_file', 'atomic_output', 'atomic_write_text', 'IMAGE_EXTENSIONS', 'ConfigFileError',
    'ImageFileError', 'image_stems', 'list_images', 'load_config', 'read_image'
]
