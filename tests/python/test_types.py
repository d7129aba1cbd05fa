"""Meshes, types and plans from Python: the same parser, errors and plan figures as the C++ CLI."""
import json
import os
import subprocess

import pytest

import reshard
from conftest import all_cases


def test_version_matches_cmake_project():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "CMakeLists.txt").read_text()
    assert reshard.__version__ == re.search(r"project\(reshard\s+VERSION\s+([0-9.]+)", text).group(1)


def test_mesh():
    m = reshard.Mesh("dp=2, tp=4")
    assert str(m) == "dp=2,tp=4"
    assert m.axes == [("dp", 2), ("tp", 4)] and m.num_devices == 8 and m.shape == (2, 4)
    assert m == reshard.Mesh("dp=2,tp=4") and m != reshard.Mesh("tp=4,dp=2")
    assert hash(m) == hash(reshard.Mesh("dp=2,tp=4"))
    assert m.coords(5) == (1, 1)  # rank = 4*dp + tp
    assert eval(repr(m), {"reshard": reshard}) == m
    assert (m == "dp=2,tp=4") is False and m != None  # noqa: E711  other kinds are never equal


@pytest.mark.parametrize("text,pos,words", [
    ("x=2,,y=3", 4, "axis name"), ("x=0", 2, "sizes are >= 1"), ("x=2,x=3", 4, "twice"),
    ("", 0, "empty"), ("x=2;y=2", 3, "unexpected"), ("1x=2", 0, "axis name"),
])
def test_mesh_errors(text, pos, words):
    with pytest.raises(ValueError) as e:
        reshard.Mesh(text)
    assert isinstance(e.value, reshard.ParseError) and isinstance(e.value, reshard.Error)
    assert e.value.position == pos and e.value.text == text
    assert words in str(e.value) and f"position {pos}" in str(e.value)


def test_type():
    m = reshard.Mesh("x=2,y=2")
    t = reshard.Type("f32[30{x,y},7]", m)
    assert str(t) == "f32[30{x,y}, 7]"
    assert t.shape == (30, 7) and t.dtype == "f32" and t.dim_axes == [["x", "y"], []] and t.reduce_op is None
    assert t == reshard.Type(" f32 [ 30 {x, y}, 7 ] ", m) and hash(t) == hash(reshard.Type("f32[30{x,y},7]", m))
    assert t != reshard.Type("f32[30{y,x},7]", m)
    assert t != reshard.Type("f32[30{x,y},7]", reshard.Mesh("x=2,y=2,z=1"))  # same text, other mesh
    assert t.block(3) == [(24, 30), (0, 7)] and t.local_shape(3) == (6, 7)
    p = reshard.Type("bf16[8, 4{y}] sum{x}", m)
    assert p.reduce_op == "sum" and p.reduce_axes == ["x"] and str(p) == "bf16[8, 4{y}] sum{x}"
    assert len({t, reshard.Type("f32[30{x,y}, 7]", m), p}) == 2
    assert (t == "f32[30{x,y}, 7]") is False


@pytest.mark.parametrize("text,pos,words", [
    ("f32[30{q},7]", 7, "'q' is not an axis"), ("f33[4]", 0, "unknown dtype"),
    ("f32[4{x},4{x}]", 11, "used twice"), ("f32[4", 5, "expected ']'"), ("f32[0]", 4, ""),
    ("f32[4] sum{}", None, ""), ("f32[4] avg{x}", None, ""),
])
def test_type_errors(text, pos, words):
    m = reshard.Mesh("x=2,y=2")
    with pytest.raises(reshard.ParseError) as e:
        reshard.Type(text, m)
    assert isinstance(e.value, ValueError) and words in str(e.value)
    if pos is not None:
        assert e.value.position == pos


def cli(*args):
    exe = os.environ.get("RESHARD_CLI")
    if not exe:
        pytest.skip("RESHARD_CLI (the reshard executable) is not set")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout


CLI_CASES = [c for c in all_cases() if c[0] in (
    "gather_1d", "transpose_2d", "add_major", "rs_then_move", "max_reduce", "uneven_nonnesting")] or all_cases()[:6]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c[0])
def test_plan_is_what_the_cli_prints(case):
    _, mesh_text, src_text, dst_text = case
    mesh = reshard.Mesh(mesh_text)
    p = reshard.plan(mesh, reshard.Type(src_text, mesh), reshard.Type(dst_text, mesh), verify=True)
    want = json.loads(cli("plan", "--mesh", mesh_text, "--from", src_text, "--to", dst_text, "--json", "--verify"))
    assert json.loads(p.to_json()) == want
    for k, v in want.items():  # every figure of plan --json is in .stats or an attribute
        if k in ("mesh", "from", "to", "strategy", "steps", "notes"):
            continue
        assert p.stats[k] == v, k
    assert p.steps == want["steps"] and p.notes == want["notes"] and p.verified is True
    assert str(p) == cli("plan", "--mesh", mesh_text, "--from", src_text, "--to", dst_text, "--verify")


def test_plan_options_and_errors():
    m = reshard.Mesh("x=2,y=3")
    src, dst = "f32[12{x},12{y}]", "f32[12{y},12{x}]"
    p = reshard.plan(m, src, dst, topology="x=nvlink,y=ib")
    assert p.src == reshard.Type(src, m) and len(p.steps) >= 1 and p.verified is None
    assert reshard.plan(m, src, dst, strategy="naive").strategy == "naive"
    with pytest.raises(reshard.MismatchError, match="shape|global"):
        reshard.plan(m, "f32[12{x}]", "f32[13{x}]")
    with pytest.raises(reshard.MismatchError, match="dtype|f64"):
        reshard.plan(m, "f32[12{x}]", "f64[12{x}]")
    with pytest.raises(reshard.MismatchError, match="mesh"):
        reshard.plan(m, reshard.Type("f32[12{x}]", reshard.Mesh("x=2")), "f32[12]")
    with pytest.raises(reshard.Error, match="strategy|unknown"):
        reshard.plan(m, src, dst, strategy="fastest")
    with pytest.raises(reshard.Error):
        reshard.plan(m, src, dst, topology="x=warp")


def test_every_case_plans_and_verifies():
    for name, mesh_text, src, dst in all_cases():
        mesh = reshard.Mesh(mesh_text)
        if mesh.num_devices > 64:
            continue
        p = reshard.plan(mesh, src, dst, verify=True)
        assert p.verified, (name, p.stats.get("verify_error"))
        assert p.stats["max_intermediate_bytes"] <= max(p.stats["src_local_bytes"], p.stats["dst_local_bytes"]), name
