"""What regulators and partners exchange: EPCIS 2.0 export and import, the
CBV 2.0 event hash, the FSMA 204 sortable spreadsheet.
"""
