"""mmglnet: GLNet (GLMix) backbones for the OpenMMLab 2.0 codebases."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

REPO_ROOT = osp.dirname(osp.abspath(__file__))
# What ships in mmglnet/.mim for OpenMMLab's mim (`mim search mmglnet`, `mim train mmglnet`).
MIM_FILES = ('configs', 'tools', 'model-index.yml')


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


def add_mim_extension():
    """Put the configs, tools and model-index.yml in ``mmglnet/.mim``, as OpenMMLab packages do.

    An editable install (``pip install -e .``: ``develop`` or ``editable_wheel``) links them,
    so that edits show at once; building a distribution (``bdist_wheel``, ``sdist``, ``install``)
    copies them. Other commands leave ``mmglnet/.mim`` as it is.
    """
    commands = set(sys.argv[1:])
    if commands & {'develop', 'editable_wheel'}:
        mode = 'copy' if os.name == 'nt' else 'symlink'
    elif commands & {'bdist_wheel', 'sdist', 'install'}:
        mode = 'copy'
    else:
        return
    mim_path = osp.join(REPO_ROOT, 'mmglnet', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(REPO_ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            warnings.warn(f'{src} does not exist: it is left out of mmglnet/.mim.')
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


add_mim_extension()
setup(
    name='mmglnet',
    version=read_version(),
    description='GLNet (GLMix, NeurIPS 2024) backbones for mmdetection, '
    'mmsegmentation and mmpretrain',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmglnet', 'mmglnet.*']),
    include_package_data=True,  # mmglnet/.mim (MANIFEST.in)
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
