import pytest

from edgefleet.errors import ModelImportError
from edgefleet.toolchain.tflite_import import import_tflite


def test_unsupported_op_is_named():
    from edgefleet.toolchain.testmodels import make_tflite_with_op

    with pytest.raises(ModelImportError, match=r"unsupported op [A-Z_0-9]+ \(operator \d+\)"):
        import_tflite(make_tflite_with_op())


def test_float_model_is_refused_with_a_hint(trained):
    with pytest.raises(ModelImportError, match="FLOAT32.*full-int8"):
        import_tflite(trained.tflite_float)


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, b"\x00" * 64])
def test_garbage_is_refused(data):
    with pytest.raises(ModelImportError):
        import_tflite(data)


def test_requant_mode_is_checked(tflite_models):
    with pytest.raises(ModelImportError, match="requant"):
        import_tflite(tflite_models["ae32_pc"], requant="double")


def test_activation_bounds_follow_tflite(tflite_models):
    art = import_tflite(tflite_models["narrow_relu6"])
    hidden, last = art.layers
    assert hidden.activation == 1 and hidden.act_min == hidden.output_zero_point
    assert last.activation == 2 and last.act_min == last.output_zero_point
    six = last.output_zero_point + round(6.0 / art.output_scale)
    assert last.act_max == min(127, six)
