print("routes-bench: see bench/node-routes/run.sh")
