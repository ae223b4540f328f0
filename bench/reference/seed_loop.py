"""One epoch of the blog post's loop, written the way the post writes it.

DataLoader over a Dataset with a WeightedRandomSampler for training, validation with
batch size 1, accuracy as the per-batch rounded percentage averaged over batches.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler


class CancerDataset(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __getitem__(self, i):
        return self.X[i], self.y[i]

    def __len__(self):
        return len(self.X)


class MulticlassClassification(nn.Module):
    def __init__(self, num_feature, num_class, d, M):
        super().__init__()
        self.layer_1 = nn.Linear(num_feature, M)
        self.layer_out = nn.Linear(M, num_class)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(p=d)
        self.batchnorm1 = nn.BatchNorm1d(M)

    def forward(self, x):
        return self.layer_out(self.dropout(self.relu(self.batchnorm1(self.layer_1(x)))))


def multi_acc(y_pred, y_test):
    _, tags = torch.max(torch.log_softmax(y_pred, dim=1), dim=1)
    return torch.round((tags == y_test).sum().float() / y_test.shape[0] * 100)


class SeedLoop:
    """The post's model, optimiser and loaders for one config, trained an epoch at a time."""

    def __init__(self, x_train, y_train, x_val, y_val, config):
        tr = CancerDataset(torch.from_numpy(x_train).float(), torch.from_numpy(y_train).long())
        va = CancerDataset(torch.from_numpy(x_val).float(), torch.from_numpy(y_val).long())
        target_list = torch.tensor([t for _, t in tr])
        class_count = [c for _, c in sorted(Counter(np.asarray(y_train).tolist()).items())]
        class_weights = 1.0 / torch.tensor(class_count, dtype=torch.float)
        sampler = WeightedRandomSampler(
            class_weights[target_list], len(target_list), replacement=True
        )
        self.train_loader = DataLoader(
            tr, batch_size=config["batch_size"], sampler=sampler, drop_last=True
        )
        self.val_loader = DataLoader(va, shuffle=True, batch_size=1)
        self.model = MulticlassClassification(
            x_train.shape[1], len(class_count), config["dropout"], config["hidden_units"]
        )
        self.opt = optim.Adam(
            self.model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
        )
        self.criterion = nn.CrossEntropyLoss()

    def epoch(self) -> float:
        """Train and validate once; return validation accuracy in percent."""
        self.model.train()
        for xb, yb in self.train_loader:
            self.opt.zero_grad()
            out = self.model(xb)
            loss = self.criterion(out, yb)
            loss.backward()
            self.opt.step()
            loss.item()
            multi_acc(out, yb).item()
        va_ = 0.0
        self.model.eval()
        with torch.no_grad():
            for xb, yb in self.val_loader:
                out = self.model(xb)
                self.criterion(out, yb).item()
                va_ += multi_acc(out, yb).item()
        return va_ / len(self.val_loader)
