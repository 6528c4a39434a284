"""The accuracy benchmark (``anfe bench``): sizes, modes, baselines, groups, ages and plots."""
