from .input_files import (IMAGE_EXTENSIONS, ConfigFileError, ImageFileError, image_stems,
                          list_images, load_config, read_image)

__all__ = [
    'IMAGE_EXTENSIONS', 'ConfigFileError', 'ImageFileError', 'image_stems', 'list_images',
    'load_config', 'read_image'
]
