"""The report's recipe trained with seeds 1-5 on the full MNIST, measured once; written by `python -m course_utils.spread`, read by `load_stored_spread`."""

SPREAD = {
 "config": {
  "model": "TwoLayerCNN",
  "optimizer": "Adadelta",
  "lr": 1.0,
  "batch_size": 512,
  "epochs": 15,
  "seed": 1,
  "lr_gamma": 0.7
 },
 "runs": [
  {
   "seed": 1,
   "test_acc": 0.8022000193595886,
   "test_loss": 0.9008674025535583,
   "seconds": 5.4
  },
  {
   "seed": 2,
   "test_acc": 0.7983999848365784,
   "test_loss": 0.9052903056144714,
   "seconds": 6.9
  },
  {
   "seed": 3,
   "test_acc": 0.7569000124931335,
   "test_loss": 1.1727685928344727,
   "seconds": 4.3
  },
  {
   "seed": 4,
   "test_acc": 0.819599986076355,
   "test_loss": 0.7638716101646423,
   "seconds": 4.0
  },
  {
   "seed": 5,
   "test_acc": 0.8070999979972839,
   "test_loss": 0.7930293679237366,
   "seconds": 3.6
  }
 ],
 "machine": "Intel(R) Xeon(R) Processor, Linux x86_64",
 "torch": "2.14.1+cu130",
 "threads": 1,
 "command": "python -m course_utils.spread",
 "note": ""
}
