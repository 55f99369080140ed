"""nn.Modules only, single device, no IO: layers, VAE, DiT, text encoder."""
