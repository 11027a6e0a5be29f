from .config_checks import (ConfigPathError, check_checkpoint_file, check_dataset_paths,
                            check_evaluator_paths, check_pretrained_files, redirect_data_root)

__all__ = [
    'ConfigPathError', 'check_checkpoint_file', 'check_dataset_paths', 'check_evaluator_paths',
    'check_pretrained_files', 'redirect_data_root'
]
