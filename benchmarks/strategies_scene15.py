"""Quick single-data-set check: fine-tune on scene15 train, evaluate on scene15 test.

Usage: .venv/bin/python benchmarks/strategies_scene15.py LR OUT EPOCHS
"""
import logging, sys
from pathlib import Path
from vidconcept.model.train import train
from vidconcept.evaluate import evaluate
lr=float(sys.argv[1]); out=Path(sys.argv[2])
train('tf_efficientnet_lite0','ft3-ex1-512',['folder:../shared/data/scene15'],out,epochs=int(sys.argv[3]),lr=lr,batch_size=64,cache_stages=12)
r=evaluate(out,'folder:../shared/data/scene15','test')
print(lr, {k:v['map'] for k,v in r['outputs'].items()}, flush=True)
