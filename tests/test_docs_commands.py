"""The commands of README.md and docs/*.md work as written, from a fresh copy of the repository.

Every shell command of the documentation (the lines of fenced ``bash``/``shell``/``sh`` blocks,
and of untagged blocks that start with a command; continued lines joined) is classified in
:data:`COMMANDS` by its exact text, and a command that is not there fails
:func:`test_every_command_is_classified`. What each kind gets:

* ``RUN``: run as written, with the working directory a fresh copy of the repository (its files
  as ``git ls-files`` lists them, ``.venv`` linked to this environment); it must succeed, write
  the files named, and print the output the documentation shows (``# ...`` lines under it).
* ``RUN_SHORTENED``: the same, with arguments appended that shorten a training schedule.
* ``REFUSED``: needs what a test machine lacks (COCO, ADE20K or ImageNet, the official release
  files, a GPU): run as written, it must stop with the tool's own message (no traceback)
  naming what is missing.
* ``SYNOPSIS``: a usage line with placeholders (``CONFIG``, ``[--work-dir DIR]``): the tool's
  ``--help`` lists every option it names (shell scripts: ``bash -n`` parses them).
* ``ELSEWHERE``: needs what no test machine has (several GPUs or machines, a Slurm cluster, a
  checkout of another codebase, network) or is the test suite itself: the tool's ``--help`` lists
  every option it names, the shell scripts parse.

For every command, the files of the repository it names exist. Commands run the project's
Python as ``.venv/bin/python``, as the README says; docs/benchmark.md, generated from the
benchmark's records, shows the commands as they were run.
"""
import contextlib
import glob
import json
import os
import os.path as osp
import re
import shlex
import shutil
import socket
import subprocess
import sys
from typing import Dict, List, NamedTuple

import pytest

from conftest import REPO_ROOT

RUN = 'run'
RUN_SHORTENED = 'run, shortened'
REFUSED = 'refused'
SYNOPSIS = 'synopsis'
ELSEWHERE = 'elsewhere'

DOC_FILES = ['README.md'] + sorted(
    osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'docs', '*.md')))
# Generated from docs/benchmarks/*.json: the commands as the runs recorded them.
RECORDED_COMMANDS_DOC = 'docs/benchmark.md'
BENCHMARK = 'python tools/analysis_tools/benchmark.py '
SHELL_LANGUAGES = ('bash', 'shell', 'sh')
COMMAND_WORDS = ('python', 'python3', '.venv/bin/python', 'bash', 'sbatch')
# The project's Python called as plain `python`.
PLAIN_PYTHON = re.compile(r'(?<![\w./-])python (?=tools/|tests/|-c |-m )')

DEMO_DATA = '.venv/bin/python tools/demo.py --data-only'
SHORT_SCHEDULE = [
    '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2'
]

# command -> (kind, details). Details: RUN: files it writes, `after` (a command run first);
# RUN_SHORTENED: `append`, files, `after`; REFUSED: `says` (text of the tool's message, or
# alternatives: with a GPU, --amp passes and the missing data stops the tool);
# ELSEWHERE: `why`; any: `own_python` (runs in another environment, with its `python`).
COMMANDS: Dict[str, tuple] = {
    # README.md
    'bash tools/setup_env.sh && .venv/bin/python tools/demo.py':
    (ELSEWHERE,
     dict(why='the whole demo takes 4-5 minutes on 2 cores; its tools run in tests/test_tools.py '
          'on the same configs, its data in tests/test_demo_data.py')),
    'bash tools/setup_env.sh && .venv/bin/python -m pytest tests':
    (ELSEWHERE, dict(why='the test suite itself')),
    '.venv/bin/python tools/train.py configs/segmentation/upernet_glnet4g_160k.py --amp':
    (REFUSED, dict(says=('needs a GPU', "The data root 'data/ade/ADEChallengeData2016'"))),
    'bash tools/dist_train.sh configs/detection/mask-rcnn_glnet4g_fpn_1x_coco.py 8 --amp':
    (ELSEWHERE, dict(why='8 GPUs')),
    '.venv/bin/python tools/test.py configs/segmentation/upernet_glnet4g_160k.py CHECKPOINT':
    (REFUSED, dict(says="The checkpoint 'CHECKPOINT'")),
    '.venv/bin/python tools/analysis_tools/get_flops.py '
    'configs/segmentation/upernet_glnet4g_160k.py --shape 512 2048': (RUN, {}),
    '.venv/bin/python tools/model_converters/glnet2mm.py checkpoints/glnet_4g.pth '
    'checkpoints/glnet4g_in1k_mm.pth':
    (REFUSED, dict(says="Checkpoint file 'checkpoints/glnet_4g.pth' does not exist")),
    '.venv/bin/python tools/test.py configs/classification/glnet4g_in1k.py '
    'checkpoints/glnet4g_in1k_mm.pth':
    (REFUSED, dict(says="The checkpoint 'checkpoints/glnet4g_in1k_mm.pth'")),
    '.venv/bin/python tools/visualize_slots.py docs/images/demo.jpg 4g --blocks 0.3 1.3 2.16 '
    '--k 4 --out-dir slot_maps': (RUN, dict(files=['slot_maps/demo_overview.png'])),
    '.venv/bin/python tools/visualize_slots.py docs/images/demo.jpg 4g checkpoints/glnet_4g.pth '
    '--blocks 0.3 1.3 2.16 --k 4 --out-dir slot_maps':
    (REFUSED, dict(says="Checkpoint file 'checkpoints/glnet_4g.pth' does not exist")),
    '.venv/bin/python tools/deployment/pytorch2onnx.py 4g checkpoints/glnet_4g.pth --out '
    'glnet_4g.onnx --shape 224 224 --dynamic --check-shape 200 264 --check-shape 168 312':
    (REFUSED, dict(says="Checkpoint file 'checkpoints/glnet_4g.pth' does not exist")),
    'MMGLNET_TRUSTED_CHECKPOINTS=/path/to/trusted.pth .venv/bin/python tools/test.py CONFIG '
    '/path/to/trusted.pth': (SYNOPSIS, {}),
    # docs/configs.md
    '.venv/bin/python tools/train.py configs/segmentation/upernet_glnet4g_160k.py':
    (REFUSED, dict(says="The data root 'data/ade/ADEChallengeData2016'")),
    '.venv/bin/python tools/train.py configs/detection/mask-rcnn_glnet4g_fpn_1x_coco.py --amp':
    (REFUSED, dict(says=('needs a GPU', "The data root 'data/coco/'"))),
    '.venv/bin/python tools/test.py configs/segmentation/upernet_glnet4g_160k.py '
    'work_dirs/.../iter_160000.pth': (REFUSED,
                                      dict(says="The checkpoint 'work_dirs/.../iter_160000.pth'")),
    # docs/training.md
    '.venv/bin/python tools/model_converters/publish_model.py IN_FILE OUT_FILE '
    '[--save-keys KEY ...]': (SYNOPSIS, {}),
    '.venv/bin/python tools/model_converters/publish_model.py '
    'work_dirs/upernet_glnet4g_160k/iter_160000.pth checkpoints/upernet_glnet4g_ade20k.pth':
    (REFUSED, dict(says="'work_dirs/upernet_glnet4g_160k/iter_160000.pth' does not exist")),
    '.venv/bin/python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp] '
    '[--auto-scale-lr] [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]':
    (SYNOPSIS, {}),
    '.venv/bin/python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show] '
    '[--show-dir DIR] [--tta] [--allow-partial-checkpoint] [--cfg-options KEY=VALUE ...] '
    '[--launcher {none,pytorch,slurm,mpi}]': (SYNOPSIS, {}),
    'bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]': (SYNOPSIS, {}),
    'bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py options]': (SYNOPSIS, {}),
    'NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8':
    (ELSEWHERE, dict(why='two machines with 8 GPUs each')),
    'NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8':
    (ELSEWHERE, dict(why='two machines with 8 GPUs each')),
    DEMO_DATA: (RUN,
                dict(files=[
                    'work_dirs/demo/data/ade/images/training',
                    'work_dirs/demo/data/coco/annotations/instances_val.json'
                ])),
    'bash tools/dist_train.sh configs/demo/upernet_glnet-tiny_shapes-ade-128x128.py 2 '
    '--work-dir work_dirs/dist_demo': (RUN_SHORTENED,
                                       dict(
                                           append=SHORT_SCHEDULE,
                                           after=DEMO_DATA,
                                           files=['work_dirs/dist_demo/iter_2.pth'])),
    'bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]': (SYNOPSIS,
                                                                                        {}),
    'bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]': (SYNOPSIS,
                                                                                        {}),
    'sbatch --requeue --partition=gpu --job-name=glnet --nodes=1 --ntasks=8 --gres=gpu:8 '
    '--cpus-per-task=5 --open-mode=append --output=work_dirs/run1.%j.out --wrap "bash '
    'tools/slurm_train.sh gpu glnet CONFIG work_dirs/run1 --resume"': (ELSEWHERE,
                                                                       dict(why='a Slurm cluster')),
    'python tools/train.py '
    '/path/to/mmglnet/configs/demo/upernet_glnet-tiny_shapes-ade-128x128.py':
    (ELSEWHERE,
     dict(why="a checkout of mmsegmentation, whose tools/train.py it runs", own_python=True)),
    '.venv/bin/python tools/analysis_tools/check_compiled_training.py --option compile_backbone '
    '--mode reduce-overhead --precision fp16': (REFUSED, dict(says='fp16 needs --device cuda')),
    '.venv/bin/python tools/analysis_tools/check_compiled_training.py --backend aot_eager': (RUN,
                                                                                             {}),
    '.venv/bin/python tools/analysis_tools/check_compiled_training.py --backend aot_eager '
    '--steps 4 --accumulate 1 2': (RUN, {}),
    # docs/visualization.md
    '.venv/bin/python tools/visualize_slots.py IMAGE CONFIG_OR_PRESET [CHECKPOINT] '
    '[--blocks 0.3 2.16 | all] [--k 4] [--size 512 | H W | 0] [--out-dir slot_maps]': (SYNOPSIS,
                                                                                       {}),
    '.venv/bin/python -c "from skimage import data; import mmcv; '
    'mmcv.imwrite(data.astronaut()[..., ::-1], \'astronaut.png\')"':
    (RUN, dict(files=['astronaut.png'])),
    '.venv/bin/python tools/visualize_slots.py astronaut.png 4g --k 3 --panel-height 160 '
    '--out-dir slot_maps': (RUN,
                            dict(
                                after='.venv/bin/python -c "from skimage import data; import mmcv; '
                                'mmcv.imwrite(data.astronaut()[..., ::-1], \'astronaut.png\')"',
                                files=['slot_maps/astronaut_overview.png'])),
    '.venv/bin/python tools/image_demo.py IMAGE CONFIG CHECKPOINT --out-file result.jpg '
    '[--with-slots] [--device cpu] [--score-thr 0.3] [--opacity 0.6] '
    '[--allow-partial-checkpoint]': (SYNOPSIS, {}),
    '.venv/bin/python tools/image_demo.py FOLDER CONFIG CHECKPOINT --out-dir results '
    '[--with-slots]': (SYNOPSIS, {}),
    # docs/benchmark.md: preparing a GPU machine without mmengine (network)
    "grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude":
    (ELSEWHERE, dict(why='prepares a GPU machine, with the next command (network)')),
    'python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 '
    '--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 '
    '--platform manylinux2014_x86_64 -d .whl mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 '
    'platformdirs==4.3.6 termcolor==2.5.0':
    (ELSEWHERE, dict(why='network; the wheels for a GPU machine without mmengine',
                     own_python=True)),
}


def classify(doc: str, command: str) -> tuple:
    """The kind and details of a command (KeyError for one not classified)."""
    if doc == RECORDED_COMMANDS_DOC and command.startswith(BENCHMARK):
        # The reproduction recipes and the recorded runs of the benchmark page (minutes each,
        # most of them on a GPU).
        return ELSEWHERE, dict(
            why='benchmark runs of minutes to hours, most on a GPU', own_python=True)
    return COMMANDS[command]


def _details(doc: str, command: str) -> dict:
    try:
        return classify(doc, command)[1]
    except KeyError:  # reported by test_every_command_is_classified
        return {}


class Command(NamedTuple):
    doc: str
    line: int
    text: str
    shown_output: List[str]  # the `# ...` lines right under it


def _fenced_blocks(text: str):
    lines = text.split('\n')
    i = 0
    while i < len(lines):
        opening = re.match(r'^\s*```\s*([\w+-]*)\s*$', lines[i])
        if not opening:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(r'^\s*```\s*$', lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        yield opening.group(1), start, body


def extract_commands(doc: str) -> List[Command]:
    with open(osp.join(REPO_ROOT, doc)) as f:
        text = f.read()
    commands = []
    for language, start, body in _fenced_blocks(text):
        stripped = [line.strip() for line in body]
        first = next((line for line in stripped if line and not line.startswith('#')), '')
        first_word = re.sub(r'^(\w+=\S+\s+)*', '', first).split(' ')[0]
        if language not in SHELL_LANGUAGES and not (language == '' and first_word in COMMAND_WORDS):
            continue
        current = None
        pending = ''
        for offset, line in enumerate(stripped):
            if pending:
                line = pending + ' ' + line
                pending = ''
            if line.endswith('\\'):
                pending = line[:-1].rstrip()
                continue
            if not line:
                current = None
            elif line.startswith('#'):
                if current is not None:
                    current.shown_output.append(line[1:].strip())
            else:
                current = Command(doc, start + offset + 1, re.sub(r'\s+', ' ', line), [])
                commands.append(current)
    return commands


ALL_COMMANDS = [c for doc in DOC_FILES for c in extract_commands(doc)]


def _ids(commands):
    return [f'{c.doc}:{c.line}' for c in commands]


def _of_kind(*kinds):
    found, seen = [], set()
    for command in ALL_COMMANDS:
        try:
            kind, _ = classify(command.doc, command.text)
        except KeyError:
            continue
        if kind in kinds and command.text not in seen:
            seen.add(command.text)
            found.append(command)
    return found


def test_every_command_is_classified():
    missing = []
    for command in ALL_COMMANDS:
        try:
            classify(command.doc, command.text)
        except KeyError:
            missing.append(f'{command.doc}:{command.line}: {command.text}')
    assert not missing, (
        'Commands in the documentation that tests/test_docs_commands.py does not classify; '
        'add each to COMMANDS (RUN if it runs on a CPU in a minute or two, REFUSED, SYNOPSIS '
        'or ELSEWHERE otherwise):\n' + '\n'.join(missing))
    documented = {c.text for c in ALL_COMMANDS}
    stale = sorted(set(COMMANDS) - documented)
    assert not stale, f'COMMANDS lists commands no document shows any more: {stale}'


def test_commands_use_the_project_python():
    """`.venv/bin/python`, as the README says, in commands and in the prose's code spans."""
    found = []
    for doc in DOC_FILES:
        if doc == RECORDED_COMMANDS_DOC:
            continue
        own = {c.text for c in extract_commands(doc) if _details(doc, c.text).get('own_python')}
        with open(osp.join(REPO_ROOT, doc)) as f:
            lines = f.read().split('\n')
        for number, line in enumerate(lines, 1):
            if PLAIN_PYTHON.search(line) and not any(line.strip() in text for text in own):
                found.append(f'{doc}:{number}: {line.strip()}')
    assert not found, ('Commands that call plain `python` instead of `.venv/bin/python` (the '
                       "project's environment, as the README says):\n" + '\n'.join(found))


def _repo_paths(command: str) -> List[str]:
    """Files of the repository that a command names (tools, configs, docs)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    paths = []
    for word in words:
        for part in re.split(r'[ =]', word):
            part = part.replace('/path/to/mmglnet/', '')
            if re.match(r'^(tools|configs|docs)/', part) and not re.search(r'[.]{3}|[<{\[]', part):
                paths.append(part)
    return paths


@pytest.mark.parametrize('command', ALL_COMMANDS, ids=_ids(ALL_COMMANDS))
def test_named_files_exist(command):
    missing = [p for p in _repo_paths(command.text) if not osp.exists(osp.join(REPO_ROOT, p))]
    assert not missing, f'{command.doc}:{command.line} names files that do not exist: {missing}'


# --- running commands in a fresh copy of the repository ---------------------------------------


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    """The repository's files as a clone has them, with .venv linked to this environment."""
    root = tmp_path_factory.mktemp('clone')
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            check=True).stdout.decode().split('\0')
    for name in filter(None, listed):
        source = osp.join(REPO_ROOT, name)
        if osp.isfile(source):  # listed but deleted in the working tree: not there
            os.makedirs(osp.join(root, osp.dirname(name)), exist_ok=True)
            shutil.copy2(source, osp.join(root, name))
    venv = osp.join(root, '.venv')
    if sys.prefix != sys.base_prefix:
        os.symlink(sys.prefix, venv)
    else:  # no virtual environment: .venv/bin/python is this interpreter
        os.makedirs(osp.join(venv, 'bin'))
        os.symlink(sys.executable, osp.join(venv, 'bin', 'python'))
    return str(root)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


_RESULTS: Dict[str, subprocess.CompletedProcess] = {}


def run_in_clone(clone: str, command: str, append=(), timeout: float = 600):
    """Run ``command`` (plus ``append``) with bash in the copy; each command runs once."""
    key = command + ' ' + ' '.join(append)
    if key not in _RESULTS:
        env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'MMGLNET_VENV')}
        env.update(PYTHONUNBUFFERED='1', PORT=str(_free_port()))  # PORT: the dist scripts'
        env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
        full = command + ''.join(' ' + shlex.quote(arg) for arg in append)
        _RESULTS[key] = subprocess.run(['bash', '-c', full],
                                       cwd=clone,
                                       env=env,
                                       capture_output=True,
                                       text=True,
                                       timeout=timeout)
    return _RESULTS[key]


def _report(result) -> str:
    return f'exit status {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'


@pytest.mark.parametrize(
    'command', _of_kind(RUN, RUN_SHORTENED), ids=_ids(_of_kind(RUN, RUN_SHORTENED)))
def test_runs_as_written(command, clone):
    kind, details = classify(command.doc, command.text)
    if details.get('after'):
        before = run_in_clone(clone, details['after'])
        assert before.returncode == 0, f'{details["after"]}: {_report(before)}'
    result = run_in_clone(clone, command.text, details.get('append', ()))
    assert result.returncode == 0, f'{command.text}: {_report(result)}'
    output = result.stdout + result.stderr
    assert 'Traceback' not in output, output[-5000:]
    for shown in command.shown_output:
        assert shown in output, (f'{command.doc}:{command.line} shows "{shown}" under the '
                                 f'command; it printed:\n{output[-3000:]}')
    for name in details.get('files', []):
        assert osp.exists(osp.join(clone, name)), f'{command.text} did not write {name}'


@pytest.mark.parametrize('command', _of_kind(REFUSED), ids=_ids(_of_kind(REFUSED)))
def test_refused_with_a_message(command, clone):
    """Without the data, weights or GPU it needs, the tool says so and stops."""
    _, details = classify(command.doc, command.text)
    result = run_in_clone(clone, command.text)
    assert result.returncode != 0, f'{command.text} should have stopped: {_report(result)}'
    assert 'Traceback' not in result.stderr, _report(result)
    says = details['says'] if isinstance(details['says'], tuple) else (details['says'], )
    assert 'error: ' in result.stderr, _report(result)
    assert any(text in result.stderr for text in says), _report(result)


# --- what cannot run here: the tools' options and the scripts ---------------------------------

HELP_SCRIPT = r'''
import contextlib, io, json, runpy, sys
found = {}
for tool in sys.argv[1:]:
    sys.argv = [tool, '--help']
    text = io.StringIO()
    code = None
    with contextlib.redirect_stdout(text):
        try:
            runpy.run_path(tool, run_name='__main__')
        except SystemExit as exit:
            code = exit.code
    found[tool] = [code, text.getvalue()]
print('\nHELP-JSON ' + json.dumps(found))
'''

# The tool a shell script runs, which receives the options after the script's arguments.
SCRIPT_TOOLS = {
    'tools/dist_train.sh': 'tools/train.py',
    'tools/dist_test.sh': 'tools/test.py',
    'tools/slurm_train.sh': 'tools/train.py',
    'tools/slurm_test.sh': 'tools/test.py',
}


def _tools_and_options(command: str):
    """The python tools and shell scripts a command runs, each with the --options after it."""
    found = []
    for part in re.split(r'&&|\|\||;', command):
        words = part.replace('"', ' ').split()
        for i, word in enumerate(words):
            is_tool = re.match(r'^tools/.*\.py$', word) and i > 0 and 'python' in words[i - 1]
            if is_tool or re.match(r'^tools/.*\.sh$', word):
                found.append((word, []))
            elif found and re.match(r'^--[a-z][\w-]*', word):
                found[-1][1].append(re.match(r'^--[a-z][\w-]*', word).group(0))
    return found


@pytest.fixture(scope='module')
def tool_help(clone):
    """``--help`` of every tool a SYNOPSIS or ELSEWHERE command runs, in one process."""
    tools = set()
    for command in _of_kind(SYNOPSIS, ELSEWHERE):
        for name, _ in _tools_and_options(command.text):
            tools.add(SCRIPT_TOOLS.get(name, name))
    tools = sorted(t for t in tools if t.endswith('.py'))
    result = subprocess.run(
        [osp.join(clone, '.venv', 'bin', 'python'), '-c', HELP_SCRIPT] + tools,
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0 and 'HELP-JSON ' in result.stdout, _report(result)
    return json.loads(result.stdout.split('HELP-JSON ', 1)[1])


@pytest.mark.parametrize(
    'command', _of_kind(SYNOPSIS, ELSEWHERE), ids=_ids(_of_kind(SYNOPSIS, ELSEWHERE)))
def test_options_and_scripts_exist(command, clone, tool_help):
    if _details(command.doc, command.text).get('own_python') and \
            command.doc != RECORDED_COMMANDS_DOC:
        return  # another codebase's tool, or pip: test_named_files_exist checks its files
    for name, options in _tools_and_options(command.text):
        if name.endswith('.sh'):
            parsed = subprocess.run(['bash', '-n', osp.join(clone, name)],
                                    capture_output=True,
                                    text=True)
            assert parsed.returncode == 0, f'{name}: {parsed.stderr}'
        tool = SCRIPT_TOOLS.get(name, name)
        if not tool.endswith('.py'):
            continue
        code, text = tool_help[tool]
        assert code == 0, f'{tool} --help exited with {code}:\n{text}'
        unknown = [o for o in options if o not in text]
        assert not unknown, f'{command.doc}:{command.line}: {tool} has no option {unknown}'
