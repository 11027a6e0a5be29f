"""tools/analysis_tools/import_device_results.py: a GPU-suite run's files into the repository."""
import io
import json
import os.path as osp
import subprocess
import sys
import tarfile

import pytest

from mmglnet.models import GLNet

from conftest import REPO_ROOT, TINY_ARCH, load_tool


@pytest.fixture(scope='module')
def importer():
    return load_tool('import_device_results')


@pytest.fixture(autouse=True)
def no_cache_in_the_checkout(importer, tmp_path, monkeypatch):
    """An import without ``--cache-dir`` puts the cache in the test's folder, never in the
    checkout's .compile_cache/, which may hold a cache carried between device sessions."""
    monkeypatch.setattr(importer, 'CACHE_DIR', str(tmp_path / 'default_cache'))


def device_run(tmp_path, monkeypatch, name: str = 'gpu_train_fp16') -> dict:
    """A suite run's returned files in ``tmp_path / 'returned'``: a real benchmark run of a tiny
    GLNet on the CPU, with a profile, recorded as on an H100; the part's log; a compile
    cache."""
    benchmark = load_tool('benchmark')
    monkeypatch.setitem(benchmark.MODEL_BUILDERS, 'glnet_tiny',
                        lambda size: GLNet(TINY_ARCH, out_indices=(3, )))
    returned = tmp_path / 'returned'
    returned.mkdir()
    out = returned / f'{name}.json'
    benchmark.main([
        '--models', 'glnet_tiny', '--device', 'cpu', '--modes', 'infer', '--batch-size', '1',
        '--infer-size', '32', '--warmup', '1', '--iters', '1', '--repeats', '1', '--profile',
        '--out',
        str(out)
    ])
    record = json.loads(out.read_text())
    record['environment'].update(cuda='13.0', cudnn=91900, device='NVIDIA H100 80GB HBM3')
    out.write_text(json.dumps(record))
    (returned / 'suite_compiled.log').write_text(
        '# gpu_suite part compiled: commit abc, 2026-11-27T10:00:00Z\n'
        'torch 2.11.0+cu130 cuda 13.0 NVIDIA H100 80GB HBM3\n'
        'NVIDIA H100 80GB HBM3, 81559 MiB, 1980 MHz\n')
    write_cache_parts(returned, tmp_path / 'graph', 'compiled')
    return record


def write_cache_parts(folder, entry, text: str) -> None:
    """A compile cache of one graph, ``text``, split in two parts as the suite writes it."""
    entry.write_text(text)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as archive:
        archive.add(entry, arcname='fxgraph/graph')
    data = buffer.getvalue()
    (folder / 'compile_cache.tar.gz.part00').write_bytes(data[:len(data) // 2])
    (folder / 'compile_cache.tar.gz.part01').write_bytes(data[len(data) // 2:])


def cached_graph(cache) -> str:
    """The graph held by the cache parts in ``cache``, joined as the suite joins them."""
    data = b''.join(part.read_bytes() for part in sorted(cache.iterdir()))
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as archive:
        assert archive.getnames() == ['fxgraph/graph']
        return archive.extractfile('fxgraph/graph').read().decode()


def test_a_device_run_lands_under_its_gpu_name_with_its_profile_log_and_cache(
        importer, tmp_path, monkeypatch, capsys):
    record = device_run(tmp_path, monkeypatch)
    docs = tmp_path / 'docs' / 'benchmarks'
    cache = tmp_path / 'cache'
    code = importer.main(
        [str(tmp_path / 'returned'), '--docs-dir',
         str(docs), '--cache-dir',
         str(cache)])
    assert code == 0, capsys.readouterr()
    assert sorted(p.name for p in docs.iterdir()) == [
        'h100_suite_compiled.log', 'h100_train_fp16.json', 'h100_train_fp16_profile.txt'
    ]
    imported = json.loads((docs / 'h100_train_fp16.json').read_text())
    assert imported['profile_file'] == 'h100_train_fp16_profile.txt'
    assert imported['results'] == record['results']
    profile = (tmp_path / 'returned' / record['profile_file']).read_text()
    assert (docs / 'h100_train_fp16_profile.txt').read_text() == profile
    assert sorted(p.name for p in cache.iterdir()) == [
        'compile_cache.tar.gz.part00', 'compile_cache.tar.gz.part01'
    ]
    assert cached_graph(cache) == 'compiled'
    # The page beside the runs' folder shows the run, its profile linked under its new name.
    page = (tmp_path / 'docs' / 'benchmark.md').read_text()
    assert '### h100_train_fp16.json' in page
    assert '(benchmarks/h100_train_fp16_profile.txt)' in page


def test_an_import_cut_short_leaves_every_file_whole(importer, tmp_path, monkeypatch):
    """A second import of the same comparison that fails half-way (a full disk, a signal)
    leaves the first import's files as they were, and no partial file among them."""
    record = device_run(tmp_path, monkeypatch)
    docs = tmp_path / 'docs' / 'benchmarks'
    args = [str(tmp_path / 'returned'), '--docs-dir', str(docs), '--no-render']
    assert importer.main(args) == 0
    before = {p.name: p.read_text() for p in docs.iterdir()}
    (tmp_path / 'returned' / record['profile_file']).write_text('a newer profile\n' * 100)

    def copy_half(src, dst):
        with open(dst, 'w') as f:
            f.write(open(src).read()[:20])
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr('shutil.copyfile', copy_half)
    with pytest.raises(OSError, match='No space'):
        importer.main(args)
    assert {p.name: p.read_text() for p in docs.iterdir()} == before


def test_a_newer_cache_replaces_the_old_and_a_cut_one_leaves_it(importer, tmp_path, monkeypatch,
                                                                capsys):
    """The cache of the latest call replaces the one carried so far, parts and all; parts
    that do not join into a whole archive (the call was cut off while the suite wrote them)
    are refused with a warning, and the cache carried so far stays."""
    device_run(tmp_path, monkeypatch)
    returned, cache = tmp_path / 'returned', tmp_path / 'cache'
    args = [
        str(returned), '--docs-dir',
        str(tmp_path / 'docs' / 'benchmarks'), '--cache-dir',
        str(cache), '--no-render'
    ]
    (cache).mkdir()
    (cache / 'compile_cache.tar.gz').write_text('an older whole archive')
    assert importer.main(args) == 0
    assert cached_graph(cache) == 'compiled'  # the older archive is gone

    write_cache_parts(returned, tmp_path / 'graph', 'compiled again, longer ' * 50)
    (returned / 'compile_cache.tar.gz.part01').unlink()
    capsys.readouterr()
    assert importer.main(args) == 0
    assert ('warning: the compile cache compile_cache.tar.gz.part00 is not a whole archive'
            in capsys.readouterr().err)
    assert cached_graph(cache) == 'compiled'
    assert not (tmp_path / 'cache.incoming').exists()


def test_a_dry_run_is_refused_and_nothing_is_written(importer, tmp_path, monkeypatch, capsys):
    device_run(tmp_path, monkeypatch)
    dry = tmp_path / 'returned' / 'gpu_infer_fp16.json'
    record = json.loads((tmp_path / 'returned' / 'gpu_train_fp16.json').read_text())
    record['environment'].pop('cuda')
    record['environment']['device'] = 'AMD EPYC (2 cores, 2 torch threads)'
    dry.write_text(json.dumps(record))
    docs = tmp_path / 'docs' / 'benchmarks'
    assert importer.main([str(tmp_path / 'returned'), '--docs-dir', str(docs)]) == 2
    err = capsys.readouterr().err
    assert f'{dry} was not measured on a GPU (AMD EPYC (2 cores, 2 torch threads) recorded)' in err
    assert not docs.exists()


def test_a_run_without_its_profile_is_refused(importer, tmp_path, monkeypatch, capsys):
    record = device_run(tmp_path, monkeypatch)
    (tmp_path / 'returned' / record['profile_file']).unlink()
    docs = tmp_path / 'docs' / 'benchmarks'
    assert importer.main([str(tmp_path / 'returned'), '--docs-dir', str(docs)]) == 2
    assert 'gpu_train_fp16_profile.txt, which is not beside it' in capsys.readouterr().err
    assert not docs.exists()


@pytest.mark.parametrize('device,prefix',
                         [('NVIDIA H100 80GB HBM3', 'h100'), ('NVIDIA H200', 'h200'),
                          ('NVIDIA A100-SXM4-80GB', 'a100')])
def test_gpu_prefix_is_the_model_number(importer, device, prefix):
    assert importer.gpu_prefix(device) == prefix


def test_an_unknown_gpu_name_asks_for_a_prefix(importer):
    with pytest.raises(importer.ResultFileError, match='pass --prefix'):
        importer.gpu_prefix('Some Accelerator')


def test_the_command_line_tool_says_when_there_is_nothing_to_import(tmp_path):
    result = subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'import_device_results.py'),
        str(tmp_path)
    ],
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    assert ('holds no gpu_*.json, suite_*.log or compile cache (compile_cache.tar.gz.part00, '
            '...): nothing imported') in result.stdout
