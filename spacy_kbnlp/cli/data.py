"""``python -m spacy_kbnlp unpack-semeval``: the SemEval-2010 Task 8 release tarball
(fetched by ``spacy project assets``) unpacked into the layout of the shared data
(``training/``, ``testing/``, ``testing_keys/``)."""
import re
import tarfile
from pathlib import Path
from typing import List, Union

from wasabi import msg

from ..errors import Errors
from ._util import Arg, app

_PART = re.compile(r"(?:^|/)SemEval2010_task8_(training|testing|testing_keys)/([^/]+)$")


def unpack_semeval(tarball: Union[str, Path], output_dir: Union[str, Path]) -> List[Path]:
    """Extract the data files of the release into ``output_dir/<part>/<file>``.
    Only regular files whose path matches the release layout are written (no
    path from the archive is used as is)."""
    tarball, output_dir = Path(tarball), Path(output_dir)
    if not tarball.is_file():
        raise ValueError(Errors.KBE052.format(path=tarball))
    written = []
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar.getmembers():
            match = _PART.search(member.name)
            if not member.isfile() or match is None:
                continue
            dest = output_dir / match.group(1) / match.group(2)
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is not None:
                dest.write_bytes(source.read())
                written.append(dest)
    if not written:
        raise ValueError(Errors.KBE072.format(path=tarball))
    return written


@app.command("unpack-semeval")
def unpack_semeval_cli(
    # fmt: off
    tarball: Path = Arg(..., help="SemEval2010_task8_all_data.tar.gz"),
    output_dir: Path = Arg(..., help="Folder that gets training/, testing/ and testing_keys/"),
    # fmt: on
):
    """Unpack the SemEval-2010 Task 8 release into the layout the readers expect."""
    try:
        files = unpack_semeval(tarball, output_dir)
    except (ValueError, OSError, tarfile.TarError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote {len(files)} files to {output_dir}")
