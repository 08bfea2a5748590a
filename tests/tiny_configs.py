"""The tiny genmodel configs the CLI/trainer tests share: 8x8 digits, a two-level U-Net."""

DATA_AND_NETWORK = """
[data]
dataset = "digits"
image_size = 8
[network]
ch = 8
ch_mult = [1, 2]
num_res_blocks = 1
attn_resolutions = [4]
groups = 4
dropout = {dropout}
"""

ANISOTROPIC = """
[process]
preset = "paper_anisotropic"
T = 0.1
dt = 0.01
"""


def tiny_toml(process: str = ANISOTROPIC, train: str = "", sampling: str = "", dropout: float = 0.0,
              prior: bool = True) -> str:
    """A TOML config: the shared [data] and [network] tables plus the given [process], [train] body
    and [sampling] body (and [prior] replicates = 1 for SPDE models)."""
    return (DATA_AND_NETWORK.format(dropout=dropout) + process + "[train]\n" + train.strip() + "\n"
            + ("[prior]\nreplicates = 1\n" if prior else "") + "[sampling]\n" + sampling.strip() + "\n")
