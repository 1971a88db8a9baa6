"""A shared deployment's configuration file and what it confines, without Streamlit."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from vfs.dashboard.config import parse_app_args
from vfs.dashboard.deployment import (
    Access,
    DatasetRoots,
    DeploymentError,
    ModelNotAllowed,
    ModelPolicy,
    OutsideRootsError,
    SignIn,
    UploadLimits,
    load_deployment,
    parse_deployment,
)
from vfs.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "vfs.example.toml"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/served (the root) beside tmp/outside (a secret); the working directory is tmp.

    served/photos/a.png, served/inside -> photos (stays inside), served/escape -> ../outside,
    served/leaky/peek.png -> ../../outside/secret.png, served/loop -> loop.
    """
    for folder in ("served/photos", "served/leaky", "outside"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "served" / "photos" / "a.png").write_bytes(b"png")
    (tmp_path / "outside" / "secret.png").write_bytes(b"secret")
    os.symlink("photos", tmp_path / "served" / "inside")
    os.symlink("../outside", tmp_path / "served" / "escape")
    os.symlink("../../outside/secret.png", tmp_path / "served" / "leaky" / "peek.png")
    os.symlink("loop", tmp_path / "served" / "loop")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def roots_of(*folders: Path) -> DatasetRoots:
    return DatasetRoots(tuple(Path(os.path.realpath(folder)) for folder in folders))


# ---------------------------------------------------------------- confinement of dataset folders


@pytest.mark.parametrize("text", [
    "served/..", "../outside", "served/../outside", "served/photos/../../outside", "/", "/etc", "/tmp",
    "served/escape", "served/escape/", "served/escape/..", "served/inside/../../outside", "served/loop/../../outside",
])
def test_paths_that_leave_the_root_are_refused(served, text):
    roots = roots_of(served / "served")
    if text == "../outside":
        os.chdir(served / "served")
    with pytest.raises(OutsideRootsError, match="outside the dataset folders this deployment serves"):
        roots.resolve(text)


def test_absolute_paths_outside_are_refused_whether_or_not_they_exist(served):
    roots = roots_of(served / "served")
    messages = []
    for target in (served / "outside", served / "outside" / "missing"):
        with pytest.raises(OutsideRootsError) as error:
            roots.resolve(str(target))
        messages.append(str(error.value).replace(str(target), "TARGET"))
    assert messages[0] == messages[1]  # the message does not reveal what exists outside


@pytest.mark.parametrize(("text", "problem"), [
    ("%2e%2e%2foutside", "URL-encoded"), ("served/..%2f..%2foutside", "URL-encoded"),
    ("served%2F..%2F..", "URL-encoded"), ("%2E%2E", "URL-encoded"), ("served/%5c..", "URL-encoded"),
    ("served/photos%00", "URL-encoded"), ("served\\..\\outside", "backslash"), ("served\\photos", "backslash"),
    ("served/photos\x00/../../outside", "NUL"),
])
def test_encoded_separators_backslashes_and_nul_are_refused_not_decoded(served, text, problem):
    with pytest.raises(DatasetError, match=problem):
        roots_of(served / "served").resolve(text)


def test_folders_inside_a_root_resolve_to_their_real_path(served):
    roots = roots_of(served / "served")
    photos = (served / "served" / "photos").resolve()
    assert roots.resolve("served/photos") == photos
    assert roots.resolve(str(served / "served" / "photos")) == photos
    assert roots.resolve("served/inside") == photos  # a link that stays inside the root
    assert roots.resolve("  served/photos  ") == photos
    assert roots.resolve("served/photos/./../photos") == photos


def test_a_link_into_another_root_is_allowed(served):
    (served / "second").mkdir()
    os.symlink("../served/photos", served / "second" / "photos")
    assert roots_of(served / "served", served / "second").resolve("second/photos") == (served / "served" / "photos"
                                                                                      ).resolve()
    with pytest.raises(OutsideRootsError):
        roots_of(served / "second").resolve("second/photos")  # not when that root is not served


def test_missing_files_and_loops_inside_a_root_are_clear_errors(served):
    roots = roots_of(served / "served")
    with pytest.raises(DatasetError, match="does not exist"):
        roots.resolve("served/missing")
    with pytest.raises(DatasetError, match="does not exist"):
        roots.resolve("served/loop")
    with pytest.raises(DatasetError, match="is a file"):
        roots.resolve("served/photos/a.png")
    with pytest.raises(DatasetError, match="Give a dataset folder"):
        roots.resolve("  ")


def test_links_that_lead_out_are_found_without_following_them(served):
    os.symlink("../leaky", served / "served" / "photos" / "more")
    roots = roots_of(served / "served")
    # each real folder is walked once (leaky/ as photos/more/ after inside/); the loop is not followed
    assert roots.outward_links((served / "served").resolve()) == ["escape", "inside/more/peek.png"]
    assert roots.outward_links((served / "served" / "leaky").resolve()) == ["peek.png"]
    assert roots_of(served / "served", served / "outside").outward_links((served / "served").resolve()) == []


def test_a_folder_holding_links_that_lead_out_is_refused_before_it_is_listed(served):
    roots = roots_of(served / "served")
    with pytest.raises(OutsideRootsError, match=r"served holds links that lead outside the served folders "
                                                r"\(escape, leaky/peek.png\)"):
        roots.resolve("served")
    with pytest.raises(OutsideRootsError, match=r"\(peek.png\)"):
        roots.resolve("served/leaky")
    assert roots_of(served / "served", served / "outside").resolve("served/leaky") == (served / "served" / "leaky"
                                                                                        ).resolve()


def test_choices_are_the_roots_and_the_folders_inside_that_stay_inside(served):
    (served / "served" / ".hidden").mkdir()
    choices = roots_of(served / "served").choices()
    root = (served / "served").resolve()
    # not escape, loop or .hidden; nor leaky and the root itself, which hold links out and are refused when chosen
    assert choices == [root / "inside", root / "photos"]
    for folder in choices:
        roots_of(served / "served").resolve(folder)


# ---------------------------------------------------------------- the configuration file


def write_config(folder: Path, text: str) -> Path:
    path = folder / "vfs.toml"
    path.write_text(text)
    return path


def test_the_example_file_parses_with_every_section(tmp_path):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50--birds.safetensors").write_bytes(b"")  # listed, not read
    config = tmp_path / "vfs.toml"
    shutil.copy(EXAMPLE, config)
    deployment = load_deployment(config)
    assert deployment.source == config
    assert deployment.datasets.roots == ((tmp_path / "datasets").resolve(),)
    assert deployment.default_dataset == (tmp_path / "datasets").resolve() and not deployment.demo
    assert deployment.read_only
    assert deployment.cache_dir == tmp_path / "cache"  # relative to the file's folder
    assert deployment.uploads == UploadLimits(max_mb=20, max_pixels=40_000_000)
    assert deployment.sign_in == SignIn(require_login=False)
    policy = deployment.models
    assert policy.default == "tf_efficientnet_lite0" and policy.allows("tf_efficientnet_lite2")
    assert policy.allows("hf-hub:timm/vit_small_patch16_224.augreg_in21k") and not policy.allows("resnet50")
    assert policy.resolve("file:resnet50--birds.safetensors") == ("resnet50",
                                                                 (tmp_path / "models" / "resnet50--birds.safetensors"
                                                                  ).resolve())


def test_the_community_cloud_file_serves_the_demo():
    deployment = load_deployment(REPO / "deploy" / "cloud.toml")
    assert deployment.demo and deployment.datasets.roots == (Path(os.path.realpath("data/clothing")),)
    assert deployment.models.allow == ("tf_efficientnet_lite0",) and not deployment.read_only


GOOD = '[datasets]\nroots = ["data"]\n'


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("roots = [", "", "not valid TOML"),
    ("read_onyl = true\n" + GOOD, "read_onyl", "unknown key"),
    ('read_only = "yes"\n' + GOOD, "read_only", "expected true or false, got str"),
    ("datasets = 3", "datasets", "expected a table"),
    ("[datasets]\nroot = [\"data\"]", "[datasets] root", "unknown key"),
    ("[datasets]\nroots = []", "[datasets] roots", "give at least one dataset folder"),
    ("[datasets]\ndemo = false", "[datasets] roots", "give at least one dataset folder"),
    ('[datasets]\nroots = "data"', "[datasets] roots", "expected a list"),
    ("[datasets]\nroots = [1]", "[datasets] roots", "expected a list of non-empty strings"),
    ('[datasets]\nroots = ["missing"]', "[datasets] roots", "missing is not an existing folder"),
    ('[datasets]\nroots = ["data/a.png"]', "[datasets] roots", "is not an existing folder"),
    (GOOD + 'default = "other"', "[datasets] default", "other is not inside any of the roots"),
    (GOOD + "demo = 1", "[datasets] demo", "expected true or false"),
    (GOOD + "[models]\nallow = []", "[models] default", "tf_efficientnet_lite0 is not allowed"),
    (GOOD + '[models]\nallow = ["resnet*"]\ndefault = "vit_base"', "[models] default", "neither allowed"),
    (GOOD + '[models]\nfolder = "weights"', "[models] folder", "weights is not an existing folder"),
    (GOOD + '[models]\nallow = "resnet50"', "[models] allow", "expected a list"),
    (GOOD + "[uploads]\nmax_mb = 0", "[uploads] max_mb", "must be from 1 to 1,024, got 0"),
    (GOOD + "[uploads]\nmax_mb = true", "[uploads] max_mb", "expected a whole number, got bool"),
    (GOOD + '[uploads]\nmax_mb = "20"', "[uploads] max_mb", "expected a whole number, got str"),
    (GOOD + "[uploads]\nmax_mb = 2.5", "[uploads] max_mb", "expected a whole number, got float"),
    (GOOD + "[uploads]\nmax_pixels = 1_000_000_000", "[uploads] max_pixels", "must be from 1 to 120,000,000"),
    (GOOD + "[uploads]\nmax_size = 3", "[uploads] max_size", "unknown key (known: max_mb, max_pixels)"),
    (GOOD + '[cache]\ndir = " "', "[cache] dir", "must not be empty"),
    (GOOD + "[auth]\nrequire_login = 1", "[auth] require_login", "expected true or false, got int"),
    (GOOD + '[auth]\nprovider = ""', "[auth] provider", "must not be empty"),
    (GOOD + '[auth]\nallowed_emails = [""]', "[auth] allowed_emails", "non-empty strings"),
])
def test_every_bad_value_names_the_file_the_key_and_the_problem(tmp_path, text, where, problem):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(b"")
    (tmp_path / "other").mkdir()
    config = write_config(tmp_path, text)
    with pytest.raises(DeploymentError) as error:
        load_deployment(config)
    message = str(error.value)
    assert message.startswith(f"{config}: ") and where in message and problem in message, message
    assert "\n" not in message.strip()


def test_an_unreadable_file_is_a_deployment_error(tmp_path):
    with pytest.raises(DeploymentError, match="cannot read the deployment file"):
        load_deployment(tmp_path / "missing.toml")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DeploymentError, match="binary.toml: cannot read"):
        load_deployment(tmp_path / "binary.toml")


def test_relative_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "conf" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    deployment = parse_deployment('[datasets]\nroots = ["data"]\n[cache]\ndir = "c"', Path("conf/vfs.toml"))
    assert deployment.datasets.roots == ((tmp_path / "conf" / "data").resolve(),)
    assert deployment.cache_dir == tmp_path / "conf" / "c"


# ---------------------------------------------------------------- models


@pytest.fixture
def models_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "finetuned").mkdir(parents=True)
    for name in ("resnet50--birds.safetensors", "convnext_tiny.fb_in22k.pth", "finetuned/vit_small_patch16_224--x.pth",
                 "notes.txt", ".hidden.safetensors"):
        (folder / name).write_bytes(b"")
    (tmp_path / "elsewhere.safetensors").write_bytes(b"")
    os.symlink("../elsewhere.safetensors", folder / "resnet18--escape.safetensors")
    return folder


def test_weights_files_name_their_architecture(models_folder):
    policy = ModelPolicy(("tf_efficientnet_lite0",), "tf_efficientnet_lite0", models_folder.resolve())
    files = {name: (weights.architecture, weights.path.name) for name, weights in policy.weights_files().items()}
    assert files == {
        "file:convnext_tiny.fb_in22k.pth": ("convnext_tiny.fb_in22k", "convnext_tiny.fb_in22k.pth"),
        "file:finetuned/vit_small_patch16_224--x.pth": ("vit_small_patch16_224", "vit_small_patch16_224--x.pth"),
        "file:resnet50--birds.safetensors": ("resnet50", "resnet50--birds.safetensors"),
    }  # not the text file, the hidden file, or the link that leads out of the folder


def test_only_allowed_names_and_listed_files_resolve(models_folder):
    policy = ModelPolicy(("tf_efficientnet_lite*", "resnet50.a1_in1k", "hf-hub:timm/*"), "tf_efficientnet_lite0",
                         models_folder.resolve())
    assert policy.resolve("tf_efficientnet_lite2") == ("tf_efficientnet_lite2", None)
    assert policy.resolve("hf-hub:timm/resnet18.a1_in1k") == ("hf-hub:timm/resnet18.a1_in1k", None)
    assert policy.resolve("file:resnet50--birds.safetensors")[0] == "resnet50"
    for name in ("resnet50", "resnet50.a1_in1k.extra", "hf-hub:someone/model", "TF_EFFICIENTNET_LITE0",
                 "file:../elsewhere.safetensors", "file:resnet18--escape.safetensors", "file:notes.txt",
                 f"file:{models_folder}/resnet50--birds.safetensors"):
        with pytest.raises(ModelNotAllowed):
            policy.resolve(name)
    with pytest.raises(ModelNotAllowed, match="not offered by this deployment; pick one matching tf_efficientnet_lite"):
        policy.resolve("resnet18")


def test_the_picker_lists_the_default_then_allowed_names_then_files(models_folder):
    policy = ModelPolicy(("tf_efficientnet_lite*", "resnet50.a1_in1k"), "tf_efficientnet_lite1",
                         models_folder.resolve())
    known = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "resnet18", "tf_efficientnet_lite4"]
    assert policy.choices(known) == [
        "tf_efficientnet_lite1", "tf_efficientnet_lite0", "tf_efficientnet_lite4", "resnet50.a1_in1k",
        "file:convnext_tiny.fb_in22k.pth", "file:finetuned/vit_small_patch16_224--x.pth",
        "file:resnet50--birds.safetensors"]


# ---------------------------------------------------------------- sign-in


@pytest.mark.parametrize(("sign_in", "user", "expected"), [
    (SignIn(), {}, Access.OPEN),
    (SignIn(), {"is_logged_in": False}, Access.OPEN),
    (SignIn(require_login=True), {}, Access.NOT_CONFIGURED),
    (SignIn(require_login=True), {"email": "test@example.com"}, Access.NOT_CONFIGURED),
    (SignIn(require_login=True), {"is_logged_in": False}, Access.SIGN_IN),
    (SignIn(require_login=True), {"is_logged_in": True, "email": "a@b.org"}, Access.OPEN),
    (SignIn(True, None, ("*@example.org",)), {"is_logged_in": True, "email": "Ann@Example.org"}, Access.OPEN),
    (SignIn(True, None, ("*@example.org",)), {"is_logged_in": True, "email": "eve@example.org.evil"}, Access.DENIED),
    (SignIn(True, None, ("*@example.org",)), {"is_logged_in": True}, Access.DENIED),
    (SignIn(True, None, ("*@example.org",)), {"is_logged_in": True, "email": "ann@example.org",
                                              "email_verified": False}, Access.DENIED),
    (SignIn(True, None, ("*@example.org",)), {"is_logged_in": True, "email": "ann@example.org",
                                              "email_verified": True}, Access.OPEN),
])
def test_who_sees_the_dashboard(sign_in, user, expected):
    assert sign_in.access(user) is expected


# ---------------------------------------------------------------- the app's arguments


def test_config_comes_from_the_option_or_the_environment(tmp_path):
    (tmp_path / "data" / "sub").mkdir(parents=True)
    config = write_config(tmp_path, '[datasets]\nroots = ["data"]\n[cache]\ndir = "cache"\n'
                                    "[uploads]\nmax_mb = 3\nmax_pixels = 1000")
    for app in (parse_app_args(["--config", str(config)], {}), parse_app_args([], {"VFS_CONFIG": str(config)})):
        assert app.deployment is not None and app.deployment.source == config
        assert app.default_dataset == (tmp_path / "data").resolve() and app.data is None
        assert app.cache_dir == tmp_path / "cache" and not app.read_only
        assert app.uploads == UploadLimits(3, 1000)
    app = parse_app_args(["--config", str(config), "--data", str(tmp_path / "data" / "sub"),
                          "--cache-dir", str(tmp_path / "c2"), "--read-only"], {})
    assert app.default_dataset == (tmp_path / "data" / "sub").resolve()
    assert app.cache_dir == tmp_path / "c2" and app.read_only
    with pytest.raises(OutsideRootsError):
        parse_app_args(["--config", str(config), "--data", str(tmp_path)], {})
    with pytest.raises(DeploymentError, match="cannot read"):
        parse_app_args(["--config", str(tmp_path / "nope.toml")], {})


def test_the_file_can_make_the_app_read_only_but_the_environment_cannot_undo_it(tmp_path):
    (tmp_path / "data").mkdir()
    config = write_config(tmp_path, 'read_only = true\n[datasets]\nroots = ["data"]')
    assert parse_app_args([], {"VFS_CONFIG": str(config), "VFS_READ_ONLY": "0"}).read_only


def test_without_a_file_the_app_is_a_local_tool(tmp_path):
    app = parse_app_args(["--data", str(tmp_path)], {})
    assert app.deployment is None and app.uploads == UploadLimits()


# ---------------------------------------------------------------- no pickle


def _calls(tree: ast.AST, dotted: str) -> list[ast.Call]:
    owner, _, name = dotted.rpartition(".")
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name and isinstance(node.func.value, ast.Name) and node.func.value.id == owner]


def test_no_code_unpickles_anything():
    sources = [*(REPO / "vfs").rglob("*.py"), REPO / "app.py", *(REPO / "app_pages").rglob("*.py")]
    assert len(sources) > 20
    for source in sources:
        tree = ast.parse(source.read_text(), str(source))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"pickle", "cPickle", "dill", "joblib", "shelve", "cloudpickle", "marshal"}, source
        for call in _calls(tree, "torch.load"):
            weights_only = [k for k in call.keywords if k.arg == "weights_only"]
            assert weights_only and ast.literal_eval(weights_only[0].value) is True, f"{source}:{call.lineno}"
        for call in _calls(tree, "np.load") + _calls(tree, "pd.read_pickle"):
            pytest.fail(f"{source}:{call.lineno} loads arrays that may hold pickles")


# ---------------------------------------------------------------- caches and documentation


def test_a_cache_holds_only_arrow_and_json(tmp_path, lite0):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from tests.support.data import package_photo
    from vfs.cache.indexing import build_index

    (tmp_path / "data").mkdir()
    for name in ("coffee.png", "rocket.jpg"):
        shutil.copy(package_photo(name), tmp_path / "data" / name)
    summary = build_index(tmp_path / "data", lite0, "blocks.3", grid=3, cache_dir=tmp_path / "cache")
    files = sorted(path for path in (tmp_path / "cache").rglob("*") if path.is_file())
    assert {path.suffix for path in files} <= {".arrow", ".json", ""} and summary.images == 2
    for path in files:
        if path.suffix == ".arrow":
            assert ipc.open_file(pa.memory_map(str(path))).read_all().num_rows == 2
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert path.name == ".lock" and path.stat().st_size == 0  # the indexers' file lock, empty


def test_only_a_cache_directly_inside_the_cache_folder_can_be_deleted(tmp_path):
    from vfs.cache.catalog import delete_cache
    from vfs.cache.feature_cache import MANIFEST
    from vfs.errors import CacheError

    cache_dir = tmp_path / "cache"
    (cache_dir / "photos-1234").mkdir(parents=True)
    victim = tmp_path / "elsewhere" / "important"
    victim.mkdir(parents=True)
    (victim / MANIFEST).write_text("{}")  # looks like a cache
    os.symlink(victim, cache_dir / "photos-1234" / "lite0--blocks.6--g7--abc")
    for target in (cache_dir / "photos-1234" / "lite0--blocks.6--g7--abc", victim,
                   cache_dir / "photos-1234" / ".." / ".." / "elsewhere" / "important"):
        with pytest.raises(CacheError, match="nothing was deleted"):
            delete_cache(cache_dir, target)
    assert (victim / MANIFEST).is_file()


def test_the_guide_shows_the_example_file_as_it_is():
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert f"```toml\n{EXAMPLE.read_text()}```" in guide
    readme = (REPO / "README.md").read_text()
    assert "docs/deploy.md" in readme
