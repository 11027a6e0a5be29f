from .input_files import ConfigFileError, ImageFileError, load_config, read_image

__all__ = ['ConfigFileError', 'ImageFileError', 'load_config', 'read_image']
