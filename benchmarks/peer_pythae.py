"""The pythae peer: the reference VAE trained with pythae 0.1.2's ``TrainingPipeline``, as a
pythae user would write it, for ``benchmarks/speed.py`` to time as a whole process.

    pip install -r benchmarks/requirements-peer.txt    # never a dependency of tfp_vae
    python benchmarks/peer_pythae.py --epochs=1 --output_dir=/tmp/pythae_run

The networks are the reference's (docs/reference.md section 1), given to pythae as its own
``BaseEncoder`` / ``BaseDecoder``: encoder 784-300-300-20 with ELU, the mean the first half, the
variance softplus(second half) + 1e-8 (handed to pythae as its log); decoder 10-300-300-784 with
ELU and a sigmoid (pythae's ``bce`` reconstruction takes probabilities). z = 10, batch 97, Adam
1e-3, two threads, MNIST's 60,000 training images as float32 in [0, 1] (pythae takes a fixed
array: no dynamic binarisation), no evaluation set. pythae saves its final model at the end, as
it does for its users.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def mlp(sizes):
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class Encoder(BaseEncoder):
    def __init__(self, z_dim):
        BaseEncoder.__init__(self)
        self.net = mlp([784, 300, 300, 2 * z_dim])

    def forward(self, x):
        m, h = torch.chunk(self.net(x.reshape(len(x), -1)), 2, dim=-1)
        return ModelOutput(embedding=m, log_covariance=torch.log(F.softplus(h) + 1e-8))


class Decoder(BaseDecoder):
    def __init__(self, z_dim):
        BaseDecoder.__init__(self)
        self.net = mlp([z_dim, 300, 300, 784])

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(len(z), 1, 28, 28))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tfp_vae import data  # only MNIST's arrays
    images = np.asarray(data.load_mnist().train_images, np.float32).reshape(-1, 1, 28, 28) / 255
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=10, reconstruction_loss="bce")
    model = VAE(model_config=config, encoder=Encoder(10), decoder=Decoder(10))
    training = BaseTrainerConfig(output_dir=args.output_dir, num_epochs=args.epochs,
                                 learning_rate=1e-3, per_device_train_batch_size=97,
                                 per_device_eval_batch_size=97, no_cuda=True, seed=0)
    TrainingPipeline(training_config=training, model=model)(train_data=images)


if __name__ == "__main__":
    main()
