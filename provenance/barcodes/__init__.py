"""GS1 barcodes: the Barcode Syntax Dictionary and engine (AI values,
element strings, Digital Link URIs) and the labels we print.
"""
