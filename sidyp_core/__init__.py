"""What the API and the workers share: settings, store, artifacts, ids, backbones, dispatch, job records."""
