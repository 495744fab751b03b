"""SiDyP's stages. Each takes the CalibrationConfig and the previous stages' typed outputs and returns its
own dataclass; `sidyp_engine.pipeline.calibrate` composes them and wraps the costly ones in checkpoints."""
