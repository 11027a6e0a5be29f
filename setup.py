"""mmglnet: GLNet (GLMix) backbones for the OpenMMLab 2.0 codebases."""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(name):
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    namespace = {}
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'mmglnet', 'version.py')
    with open(path) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmglnet',
    version=read_version(),
    description='GLNet (GLMix, NeurIPS 2024) backbones for mmdetection, '
    'mmsegmentation and mmpretrain',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmglnet', 'mmglnet.*']),
    python_requires='>=3.8',
    # torch is deliberately not listed: pip would otherwise pull a CUDA build on machines
    # that have their own torch. Install torch first (tools/setup_env.sh does).
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'det_seg': read_requirements('codebases.txt'),
        # mmpretrain's models and datasets import torchvision; install the torchvision that
        # matches your torch (there is no CPU torchvision wheel on some machines).
        'cls': ['mmpretrain>=1.0.0,<1.3.0', 'torchvision'],
        'tests': read_requirements('tests.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
