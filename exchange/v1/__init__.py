"""Generated from proto/samenloop/v1 by proto/gen_protos.py. Do not edit."""
