"""Semantic-slot visualization of GLNet models: extraction, k-medoids, drawing, saving."""
from .drawing import (BlockSlotMaps, block_panel, draw_assignment, draw_heatmap, make_panel,
                      render_block, representative_slots, slot_palette, stack_rows)
from .inputs import imagenet_data_preprocessor, network_size, prepare_inputs, preprocess_tensor
from .kmedoids import cosine_distances, k_medoids
from .slot_maps import (SlotSelectionError, check_slot_request, default_block_names,
                        extract_slot_weights, find_glnet, glmix_blocks, select_blocks)
from .visualize import save_slot_maps, visualize_image_slots, visualize_slots, write_image

__all__ = [
    'BlockSlotMaps', 'SlotSelectionError', 'block_panel', 'check_slot_request', 'cosine_distances',
    'default_block_names', 'draw_assignment', 'draw_heatmap', 'extract_slot_weights', 'find_glnet',
    'glmix_blocks', 'imagenet_data_preprocessor', 'k_medoids', 'make_panel', 'network_size',
    'prepare_inputs', 'preprocess_tensor', 'render_block', 'representative_slots', 'save_slot_maps',
    'select_blocks', 'slot_palette', 'stack_rows', 'visualize_image_slots', 'visualize_slots',
    'write_image'
]
