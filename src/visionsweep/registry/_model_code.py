"""The file MLflow runs to rebuild a registered visionsweep model (MLflow's "models from code")."""

import warnings
from pathlib import Path

import mlflow

from visionsweep.registry._pyfunc import ImageClassifier

with warnings.catch_warnings():
    # MLflow asks for type hints to validate inputs; ours are uint8 arrays or file paths, which its hints
    # cannot express, so ImageClassifier.images checks them instead.
    warnings.filterwarnings("ignore", message=".*type hints.*")

    class PyfuncModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.classifier = ImageClassifier(Path(context.artifacts["ensemble"]))

        def predict(self, context, model_input, params=None):
            return self.classifier.predict(model_input)


mlflow.models.set_model(PyfuncModel())
