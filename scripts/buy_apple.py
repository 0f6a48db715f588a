"""5.4.1: two apples at 100 each, 10% tax, through two MulLayers (book: ch05/buy_apple.py).

Prints the price and the derivatives of the price with respect to each input.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framework.layers import MulLayer  # noqa: E402
from scripts.shop import show  # noqa: E402


def main(argv=None):
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    apple, apple_num, tax = 100, 2, 1.1

    mul_apple_layer = MulLayer()
    mul_tax_layer = MulLayer()

    apple_price = mul_apple_layer.forward(apple, apple_num)
    price = mul_tax_layer.forward(apple_price, tax)

    dprice = 1
    dapple_price, dtax = mul_tax_layer.backward(dprice)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)

    show(price=price, dApple=dapple, dApple_num=dapple_num, dTax=dtax)


if __name__ == "__main__":
    main()
