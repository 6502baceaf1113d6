# GPU image: TensorFlow with CUDA from the official image, bilm on top, tests by default.
#   docker build -t bilm .
#   docker run --gpus all -v "$PWD/../shared:/shared:ro" -e BILM_SHARED=/shared bilm
FROM tensorflow/tensorflow:latest-gpu

WORKDIR /opt/bilm
COPY . .
RUN python -m pip install --no-cache-dir -e ".[dev]"
ENV TF_CPP_MIN_LOG_LEVEL=2
CMD ["python", "-m", "pytest"]
