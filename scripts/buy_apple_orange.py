"""5.4.2: two apples and three oranges, 10% tax, through Mul and Add layers
(book: ch05/buy_apple_orange.py). Prints the price and every input's derivative.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framework.layers import AddLayer, MulLayer  # noqa: E402
from scripts.shop import show  # noqa: E402


def main(argv=None):
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    apple, apple_num = 100, 2
    orange, orange_num = 150, 3
    tax = 1.1

    mul_apple_layer = MulLayer()
    mul_orange_layer = MulLayer()
    add_apple_orange_layer = AddLayer()
    mul_tax_layer = MulLayer()

    apple_price = mul_apple_layer.forward(apple, apple_num)
    orange_price = mul_orange_layer.forward(orange, orange_num)
    all_price = add_apple_orange_layer.forward(apple_price, orange_price)
    price = mul_tax_layer.forward(all_price, tax)

    dprice = 1
    dall_price, dtax = mul_tax_layer.backward(dprice)
    dapple_price, dorange_price = add_apple_orange_layer.backward(dall_price)
    dorange, dorange_num = mul_orange_layer.backward(dorange_price)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)

    show(price=price, dApple=dapple, dApple_num=dapple_num,
         dOrange=dorange, dOrange_num=dorange_num, dTax=dtax)


if __name__ == "__main__":
    main()
