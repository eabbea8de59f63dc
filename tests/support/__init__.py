"""What the integration and cluster suites share: free ports, waiting for a server, a real `mlflow server`, new
sqlite stores."""
