from .config_checks import (ConfigPathError, check_checkpoint_file, check_dataset_paths,
                            check_evaluator_paths, check_pretrained_files, redirect_data_root)
from .input_files import ConfigFileError, ImageFileError, load_config, read_image

__all__ = [
    'ConfigFileError', 'ConfigPathError', 'ImageFileError', 'check_checkpoint_file',
    'check_dataset_paths', 'check_evaluator_paths', 'check_pretrained_files', 'load_config',
    'read_image', 'redirect_data_root'
]
